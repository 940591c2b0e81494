# Login shells (JupyterLab's terminals run `bash -l`) start from /etc/profile's PATH: put back the
# kernel's Python, pip and jupyter, and the programs pip installs for the user, first.
case ":$PATH:" in
    *":$HOME/.local/bin:/opt/jupyter/bin:"*) ;;
    *) PATH="$HOME/.local/bin:/opt/jupyter/bin:$PATH" ;;
esac
export PATH
