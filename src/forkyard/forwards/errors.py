"""Port forward errors with stable codes (README: Preview URLs and port forwards)."""

from forkyard.kit.errors import Conflict, ForkyardError


class PortAlreadyForwarded(Conflict):
    code = "port_forward_exists"
    message = "This instance already forwards that port."


class NotHttpForward(Conflict):
    code = "port_forward_not_http"
    message = "Only HTTP forwards have a preview URL to share."


class PortRefused(ForkyardError):
    """Nothing listens on the port inside the instance."""

    status_code = 502
    code = "port_refused"
    message = "Nothing inside the instance accepts connections on that port."


class PortUnreachable(ForkyardError):
    status_code = 502
    code = "port_unreachable"
    message = "The port inside the instance did not answer."
