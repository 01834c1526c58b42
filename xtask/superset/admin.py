"""Creates the local stack's Superset admin, or resets its password (xtask/src/superset.rs).

`superset fab create-admin` takes the password as an argument, where every process listing shows
it; this reads it from stdin instead. Run after `superset init` (which creates the Admin role).
"""

import sys

from superset.app import create_app

username = sys.argv[1]
password = sys.stdin.read()
app = create_app()
with app.app_context():
    from superset import security_manager as sm
    from superset.extensions import db

    user = sm.find_user(username=username)
    if user is None:
        role = sm.find_role(sm.auth_role_admin)
        if sm.add_user(username, "Aspects", "Admin", f"{username}@localhost", role, password=password) is False:
            sys.exit(f"cannot create the Superset user {username}")
    else:
        sm.reset_password(user.id, password)
    db.session.commit()
