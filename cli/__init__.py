"""The Typer app, installed as the `selkd_cli` package (console script `selkd`)."""
