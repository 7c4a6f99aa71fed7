from forkyard.cli.main import app

app()
