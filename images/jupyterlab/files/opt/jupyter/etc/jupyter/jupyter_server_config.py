# Settings of the built-in JupyterLab (localhost/rosetta/jupyterlab). Loaded from the venv's
# etc/jupyter; a user's ~/.jupyter config is read after it.
import os

c = get_config()  # noqa: F821 (provided by traitlets)

c.ServerApp.ip = "0.0.0.0"
c.ServerApp.port = int(os.environ.get("BASE_PORT") or 8888)
c.ServerApp.port_retries = 0  # exactly BASE_PORT or fail: the platform connects there
c.ServerApp.base_url = "/"  # each task has its own origin
c.ServerApp.open_browser = False
c.ServerApp.root_dir = "/home/rosetta"
c.ServerApp.allow_remote_access = True  # requests arrive through the gateway, Host = task origin

# The per-task secret. rosetta-jupyterlab writes ROSETTA_TASK_SECRET to a private file (0600) and
# names it here, so the secret is in no argv and no log. The gateway sends it on every request
# as `Authorization: Bearer <secret>` (jupyter_server accepts "token" or "bearer"), so the
# browser never types it; requests without it get 403 (API) or the login page.
token_file = os.environ.get("ROSETTA_JUPYTER_TOKEN_FILE")
if token_file:
    with open(token_file, encoding="utf-8") as f:
        c.IdentityProvider.token = f.read()
else:
    c.IdentityProvider.token = ""  # no secret given: no authentication (manual testing only)
# A password set on the login page would outlive this task's secret (it is saved in ~/.jupyter).
c.PasswordIdentityProvider.allow_password_change = False

# Nothing phones home.
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
