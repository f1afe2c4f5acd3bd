"""`python -m badged`: the same as the `badged` command."""

from .cli import main

if __name__ == "__main__":
    main()
