"""The demo school's harness: runs the real daemon with no hardware and no server.

`runner` prepares the demo's state and runs the daemon (`python -m badged.demo`);
`pcscd_sandbox` runs a private pcscd with vpcd readers, for the demo, the tests and the
benches. Nothing here is used by a site's daemon: the card stack (`badged.cards`) holds only
what reads cards.
"""
