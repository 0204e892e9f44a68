from accord.cli.main import app

app()
