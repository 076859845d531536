"""Reference servers: recipes that start a server someone else wrote on the launcher's
port, so that charts can show the models beside a native server (nginx) and a
production Python one (uvicorn). One module each, listed in servers.REFERENCES."""
