"""The serving side patches by default.

``python -m ptsevent.wsgi`` and ``ptsevent.gunicorn.Worker`` call
`patch_all()` before they load the application, as a green deployment
expects: a view that calls ``time.sleep``, ``requests``, redis or smtplib
then waits cooperatively instead of stalling every request of its worker,
and (once threading is patched) a ``threading.local`` is per request.
``--no-patch`` (the command line) or ``PTSEVENT_NO_PATCH=1`` in the
environment (both, and gunicorn) switch it off.
"""

import os

ENV_NO_PATCH = "PTSEVENT_NO_PATCH"


def disabled_by_environment():
    """True when PTSEVENT_NO_PATCH is set to anything but "", 0, no, false
    or off."""
    value = os.environ.get(ENV_NO_PATCH, "").strip().lower()
    return value not in ("", "0", "no", "false", "off")


def patch_for_serving(no_patch=False):
    """patch_all() unless switched off; True when it patched."""
    if no_patch or disabled_by_environment():
        return False
    from ptsevent.patch import patch_all

    patch_all()
    return True
