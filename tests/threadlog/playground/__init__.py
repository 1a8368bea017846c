"""Tests of ``threadlog playground``: the page in a real headless Chromium."""
