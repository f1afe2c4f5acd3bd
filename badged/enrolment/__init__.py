"""Services where a card read meets a person and the CROUS.

`desk` links the card tapped at the registrar's desk to its holder and its CROUS card;
`batch` does the same from a CSV (`badged enrol --csv`); `lifecycle` moves a card through
its states (and queues what the CROUS must be told); `retention` erases the leavers whose
retention time is over. The daemon, the control socket and the CLI all call these.

What an operator asks on a host, each function opening the host's store itself:
`enrol_here` (a tap read by this process, a batch file), `people`, `card_records`,
`card_stock`; `errors` names the store's error for the command line, which imports no
store module.
"""
