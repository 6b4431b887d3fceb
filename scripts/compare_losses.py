"""`python scripts/compare_losses.py [arguments]` is `centernet compare-losses [arguments]`:
`centernet.commands.compare_losses`, whose docstring tells what it does and takes."""

from centernet.commands.compare_losses import main

if __name__ == "__main__":
    main()
