"""`python scripts/loss_numerics.py [arguments]` is `centernet loss-numerics [arguments]`:
`centernet.commands.loss_numerics`, whose docstring tells what it does and takes."""

from centernet.commands.loss_numerics import main

if __name__ == "__main__":
    main()
