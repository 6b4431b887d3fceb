"""`python scripts/benchmark.py [arguments]` is `centernet benchmark [arguments]`:
`centernet.commands.benchmark`, whose docstring tells what it does and takes."""

from centernet.commands.benchmark import main

if __name__ == "__main__":
    main()
