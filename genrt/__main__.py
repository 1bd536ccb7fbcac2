"""`python -m genrt ...` is the `genrt` command."""
from genrt.cli import main

if __name__ == "__main__":
    main(prog_name="genrt")
