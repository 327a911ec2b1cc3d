"""Stand-in for the get-pip script ansible-test downloads from a host unreachable here.

ansible-test runs it in an empty venv with pip's install arguments (e.g. pip==24.2): this
installs Python's bundled pip with ensurepip, then runs pip install with those arguments
against the package index. scripts/sanity.sh puts it where ansible-test looks for it.
"""

import subprocess
import sys

# get-pip's own options, which pip install does not take.
OWN = {"--no-setuptools", "--no-wheel"}
subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"])
args = [a for a in sys.argv[1:] if a not in OWN]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *args]))
