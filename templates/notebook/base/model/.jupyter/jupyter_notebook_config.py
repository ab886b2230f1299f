# Defaults of the hosted notebook server (jupyter lab). Options given on the command line, such as the
# token and base_url that kaos sets, take precedence over these.
import os

from traitlets import validate

c = get_config()  # noqa: F821 (provided by Jupyter when it loads this file)

c.ServerApp.ip = "0.0.0.0"
c.ServerApp.port = int(os.environ.get("PORT", "8888"))
c.ServerApp.open_browser = False
c.ServerApp.allow_root = True
c.ServerApp.root_dir = os.environ.get("NOTEBOOK_DIR", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# The notebook's token compared in constant time (hmac.compare_digest): jupyter_server's identity providers compare
# it with == (IdentityProvider.get_user_token, PasswordIdentityProvider.process_login_form), which returns at the
# first byte that differs. The token is kept as a str whose == is constant-time; Python asks it first whichever
# side of the == it stands on (a str subclass's reflected method has priority), so neither comparison needs to be
# written again here.
import hmac  # noqa: E402

from jupyter_server.auth.identity import PasswordIdentityProvider  # noqa: E402


class ConstantTimeStr(str):
    def __eq__(self, other):
        if not isinstance(other, str):
            return NotImplemented
        return hmac.compare_digest(self.encode("utf-8", "surrogatepass"), other.encode("utf-8", "surrogatepass"))

    def __ne__(self, other):
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = str.__hash__


class ConstantTimeTokenIdentityProvider(PasswordIdentityProvider):
    """jupyter_server's default identity provider, its token a ConstantTimeStr."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.token:
            self.token = ConstantTimeStr(self.token)

    @validate("token")
    def _token_compared_in_constant_time(self, proposal):
        value = proposal["value"]
        return ConstantTimeStr(value) if value else value


c.ServerApp.identity_provider_class = ConstantTimeTokenIdentityProvider
