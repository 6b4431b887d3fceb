"""`python scripts/evaluate.py [arguments]` is `centernet evaluate [arguments]`:
`centernet.commands.evaluate`, whose docstring tells what it does and takes."""

from centernet.commands.evaluate import main

if __name__ == "__main__":
    main()
