from accord.api.cli import app

app()
