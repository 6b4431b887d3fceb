"""`python scripts/show_data.py [arguments]` is `centernet show-data [arguments]`:
`centernet.commands.show_data`, whose docstring tells what it does and takes."""

from centernet.commands.show_data import main

if __name__ == "__main__":
    main()
