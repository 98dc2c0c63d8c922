"""The embedded loopback lab: FTPS and mail servers, NAT forwarder, port-25 block."""

from harness.lab import logsafe

logsafe.install()  # whichever lab server runs, its libraries' log lines are escaped
