"""`python scripts/predict.py [arguments]` is `centernet predict [arguments]`:
`centernet.commands.predict`, whose docstring tells what it does and takes."""

from centernet.commands.predict import main

if __name__ == "__main__":
    main()
