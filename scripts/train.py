"""`python scripts/train.py [arguments]` is `centernet train [arguments]`:
`centernet.commands.train`, whose docstring tells what it does and takes."""

from centernet.commands.train import main

if __name__ == "__main__":
    main()
