"""`python scripts/label_noise.py [arguments]` is `centernet label-noise [arguments]`:
`centernet.commands.label_noise`, whose docstring tells what it does and takes."""

from centernet.commands.label_noise import main

if __name__ == "__main__":
    main()
