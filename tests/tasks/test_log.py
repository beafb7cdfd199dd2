import logging

from tasks.log import RedactingFormatter, redact


def test_redact_hides_url_passwords_only():
    text = "fetch https://alice:s3cr%40t@mirror.example/repo/ failed; see http://mirror.example/x"
    assert redact(text) == "fetch https://alice:***@mirror.example/repo/ failed; see http://mirror.example/x"
    assert redact("postgres://u:p@db:5432/n and postgres://db/n") == "postgres://u:***@db:5432/n and postgres://db/n"


def test_the_formatter_redacts_messages_and_tracebacks():
    formatter = RedactingFormatter("%(message)s")
    try:
        raise RuntimeError("cannot reach https://bob:hunter2@host/")
    except RuntimeError as exc:
        record = logging.LogRecord(
            "t",
            logging.ERROR,
            __file__,
            1,
            "task failed url=%s",
            ("ftp://a:b@c/",),
            (type(exc), exc, exc.__traceback__),
        )
    text = formatter.format(record)
    assert "hunter2" not in text and ":b@" not in text
    assert "https://bob:***@host/" in text and "ftp://a:***@c/" in text
