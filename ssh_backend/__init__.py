"""Everything that talks to a host: SSH sessions, the local session, the shipped agent.

Qt-free and independent of ``app``: the whole backend runs headless.
"""
