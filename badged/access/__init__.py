"""Door-system exports (contrôle d'accès): the school's cards, valid or blocked, written in
the file format each door system imports and delivered to a folder or an SFTP server.

population.py decides who is valid; formats.py renders (pure, byte for byte);
destinations.py and sftp.py deliver atomically; export.py plans and runs an export (the
CLI and the daemon's job call it). The formats are described in docs/access-control.md.
"""
