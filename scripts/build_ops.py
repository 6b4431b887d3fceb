"""`python scripts/build_ops.py [arguments]` is `centernet build-ops [arguments]`:
`centernet.commands.build_ops`, whose docstring tells what it does and takes."""

from centernet.commands.build_ops import main

if __name__ == "__main__":
    main()
