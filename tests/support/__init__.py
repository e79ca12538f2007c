"""Test support shared across suites: fakes of the platform and builders of its payloads."""
