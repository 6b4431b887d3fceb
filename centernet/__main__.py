"""`python -m centernet COMMAND ...`: the installed `centernet` command (`centernet.commands`)."""

from centernet.commands import main

if __name__ == "__main__":
    main()
