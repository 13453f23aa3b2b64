"""Tools for testing code against ptsevent.

`ptsevent.testing.stdlib` runs CPython's own test modules (the running
interpreter's `test` package) with ptsevent's cooperative modules in place
and compares the outcome with an unpatched run of the same interpreter:

    python -m ptsevent.testing.stdlib test_ssl
"""
