from accord.cli.main import entry

entry()
