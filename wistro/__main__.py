from wistro.cli.main import run

run()
