"""`python scripts/export.py [arguments]` is `centernet export [arguments]`:
`centernet.commands.export`, whose docstring tells what it does and takes."""

from centernet.commands.export import main

if __name__ == "__main__":
    main()
