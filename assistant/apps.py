from django.apps import AppConfig


class AssistantConfig(AppConfig):
    name = "assistant"
    verbose_name = "Questions and answers"

    def ready(self) -> None:
        # Sign-ins, failed sign-ins and sign-outs come from django.contrib.auth as signals;
        # receiving them is one of the two places the portal listens rather than being called.
        from django.contrib.auth import signals

        from . import privileges, signins

        signals.user_logged_in.connect(signins.on_login, dispatch_uid="attest-login")
        signals.user_logged_out.connect(signins.on_logout, dispatch_uid="attest-logout")
        signals.user_login_failed.connect(signins.on_failed, dispatch_uid="attest-failed")
        # Changes to users' flags, permissions and groups, and to groups' permissions, are
        # audited whoever makes them (privileges.py).
        privileges.connect()
