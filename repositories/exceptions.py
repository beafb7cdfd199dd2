"""Errors of the repositories app. RepositoryError itself is never raised.

Each message is one line that says what went wrong and where, for the user who gave the URL;
URLs in messages never carry credentials.
"""


class RepositoryError(Exception):
    """Base class of the repositories app's errors."""


class InvalidURL(RepositoryError):
    """The URL cannot be fetched as written (no host, a bad port)."""


class UnsupportedScheme(RepositoryError):
    """The URL, or a redirect, is neither http nor https."""


class PrivateAddressRefused(RepositoryError):
    """The host is, or resolves to, an address that is not public."""


class HostNotFound(RepositoryError):
    """The host name does not resolve."""


class HostUnreachable(RepositoryError):
    """No address of the host accepts a connection."""


class TLSError(RepositoryError):
    """The TLS handshake failed, or the certificate is not valid for the host."""


class FetchTimeout(RepositoryError):
    """The server took longer than REPOSITORIES_FETCH_TIMEOUT to connect or to send, or the
    whole download longer than REPOSITORIES_DOWNLOAD_TIMEOUT."""


class HTTPStatusError(RepositoryError):
    """The server answered with a status other than 200 or a redirect."""


class HTTPNotFound(HTTPStatusError):
    """The server answered 404 Not Found."""


class TooManyRedirects(RepositoryError):
    """More redirects than REPOSITORIES_MAX_REDIRECTS."""


class RedirectLoop(RepositoryError):
    """A redirect leads back to a URL already visited."""


class RedirectRefused(RepositoryError):
    """A redirect carries credentials of its own, or leaves https for http."""


class DownloadTooLarge(RepositoryError):
    """The body is larger than REPOSITORIES_MAX_DOWNLOAD_SIZE."""


class TruncatedDownload(RepositoryError):
    """The body ended, or the connection broke, before the length the server announced."""


class Stopped(RepositoryError):
    """The caller asked the work to stop (its task was cancelled, lost, or is shutting down)."""


class FetchStopped(Stopped):
    """The caller asked the download to stop."""


class NotAYumRepository(RepositoryError):
    """The URL serves no repodata/repomd.xml, or something that is not one."""


class MalformedMetadata(RepositoryError):
    """A metadata file is not well-formed (truncated, corrupt, or not what repomd.xml says)."""


class XMLEntitiesRefused(RepositoryError):
    """A metadata file uses XML entities, which yum metadata never does: a possible entity bomb."""


class ChecksumMismatch(RepositoryError):
    """A metadata file's checksum differs from the one repomd.xml declares."""


class UnsupportedChecksum(RepositoryError):
    """repomd.xml declares a checksum type that cannot be verified."""


class UnsupportedCompression(RepositoryError):
    """A metadata file is compressed with something other than gz, bz2, xz or zst."""


class DecompressionBomb(RepositoryError):
    """A metadata file decompresses to more than REPOSITORIES_MAX_DECOMPRESSED_SIZE."""


class IntrospectionFailed(RepositoryError):
    """Another task's introspection of the same repository, started after this one was
    queued, failed: this one ends with its error."""


class InvalidInput(RepositoryError):
    """A value given for a configuration cannot be used; `field` names it."""

    def __init__(self, message: str, *, field: str):
        super().__init__(message)
        self.field = field


class ConfigurationNotFound(RepositoryError):
    """No live repository configuration has this uuid in the organisation."""


class SnapshotsNotEnabled(RepositoryError):
    """A snapshot was asked of a configuration whose `snapshot` flag is off."""


class NightlyRunInProgress(RepositoryError):
    """Another nightly run holds the nightly lock."""
