"""Threads: command models, decisions on the thread state, deletion, and their
subscribers (``handlers.threads.app.register_thread_commands``)."""
