"""Test doubles of what cannot run here (the real API CROUS), used by tests, bench and demo."""
