"""`python scripts/audit_labels.py [arguments]` is `centernet audit-labels [arguments]`:
`centernet.commands.audit_labels`, whose docstring tells what it does and takes."""

from centernet.commands.audit_labels import main

if __name__ == "__main__":
    main()
