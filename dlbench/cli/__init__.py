"""The command line: typer apps split by command group."""
