from modelhost.cli import app

app()
