"""`python scripts/data_service.py [arguments]` is `centernet data-service [arguments]`:
`centernet.commands.data_service`, whose docstring tells what it does and takes."""

from centernet.commands.data_service import main

if __name__ == "__main__":
    main()
