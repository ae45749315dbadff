"""The simulator's OAUTHBEARER login: Entra ID client credentials at a token endpoint (a
real HTTP endpoint on this machine), as the Java client's login handler does them."""

from __future__ import annotations

import pickle
import time

import pytest

from local_stack.simulate.producer import (
    OAUTH_LOGIN_HANDLER,
    ClientCredentialsToken,
    ProducerError,
    kafka_python_config,
)
from tests.oauth import token_endpoint
from tests.ports import free_port

pytestmark = pytest.mark.unit

SECRET = "s3cret~value"


class Entra:
    """Grants a token to client ``app`` with ``SECRET``; answers 401 as Entra ID does."""

    requests: list[dict] = []
    lifetime_s = 3599

    @classmethod
    def grant(cls, form: dict[str, str]) -> tuple[int, dict]:
        cls.requests.append(form)
        if form.get("client_secret") != SECRET:
            return 401, {
                "error": "invalid_client",
                "error_description": "AADSTS7000215: Invalid client secret provided.\r\n"
                "Trace ID: 0000",
            }
        return 200, {
            "token_type": "Bearer",
            "expires_in": cls.lifetime_s,
            "access_token": f"token-{len(cls.requests)}",
        }


@pytest.fixture
def endpoint():
    Entra.requests = []
    Entra.lifetime_s = 3599
    with token_endpoint(Entra.grant) as url:
        yield url


def _entra_options(endpoint: str, secret: str = SECRET) -> dict[str, str]:
    """What ``azure_profile.eventhubs.kafka_options`` gives for ``auth = entra_id``."""
    return {
        "bootstrap.servers": "ns.servicebus.windows.net:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "OAUTHBEARER",
        "sasl.login.callback.handler.class": OAUTH_LOGIN_HANDLER,
        "sasl.oauthbearer.token.endpoint.url": endpoint,
        "sasl.jaas.config": "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule"
        f' required clientId="app" clientSecret="{secret}"'
        ' scope="https://ns.servicebus.windows.net/.default";',
    }


def test_the_java_oauth_login_becomes_a_token_provider(endpoint):
    config = kafka_python_config(_entra_options(endpoint))
    provider = config.pop("sasl_oauth_token_provider")
    assert config == {
        "bootstrap_servers": ["ns.servicebus.windows.net:9093"],
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "OAUTHBEARER",
    }
    assert isinstance(provider, ClientCredentialsToken)
    assert SECRET not in repr(provider)

    assert provider.token() == "token-1"
    assert provider.token() == "token-1"  # kept until a minute before it expires
    assert Entra.requests == [
        {
            "grant_type": "client_credentials",
            "client_id": "app",
            "client_secret": SECRET,
            "scope": "https://ns.servicebus.windows.net/.default",
        }
    ]
    # The producer processes get it pickled, with the token already fetched.
    assert pickle.loads(pickle.dumps(provider)).token() == "token-1"
    assert len(Entra.requests) == 1


def test_a_token_is_fetched_again_before_it_expires(endpoint):
    Entra.lifetime_s = ClientCredentialsToken.REFRESH_MARGIN_S + 1
    provider = kafka_python_config(_entra_options(endpoint))["sasl_oauth_token_provider"]
    assert provider.token() == "token-1"
    time.sleep(1.1)
    assert provider.token() == "token-2"


def test_refused_credentials_are_one_line_naming_the_client(endpoint):
    provider = kafka_python_config(_entra_options(endpoint, secret="wrong"))[
        "sasl_oauth_token_provider"
    ]
    with pytest.raises(ProducerError) as refused:
        provider.token()
    message = str(refused.value)
    assert message == (
        f"token endpoint {endpoint} (client app) refused the client credentials:"
        " HTTP 401 invalid_client AADSTS7000215: Invalid client secret provided."
    )
    assert "wrong" not in message


def test_a_token_endpoint_that_does_not_answer_is_named():
    endpoint = f"http://127.0.0.1:{free_port()}/token"
    provider = kafka_python_config(_entra_options(endpoint))["sasl_oauth_token_provider"]
    with pytest.raises(ProducerError, match=rf"^cannot reach token endpoint {endpoint} \(client"):
        provider.token()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sasl.oauthbearer.token.endpoint.url": None}, "needs sasl.oauthbearer.token.endpoint"),
        ({"sasl.login.callback.handler.class": None}, "needs sasl.login.callback.handler"),
        ({"sasl.login.callback.handler.class": "com.example.Login"}, "unsupported .*: sasl.login"),
        ({"sasl.jaas.config": 'x required clientId="app";'}, "jaas.config has no clientSecret"),
    ],
)
def test_an_incomplete_oauth_login_is_named(change, message):
    options = _entra_options("http://127.0.0.1:1/token")
    for key, value in change.items():
        if value is None:
            options.pop(key)
        else:
            options[key] = value
    with pytest.raises(ProducerError, match=message):
        kafka_python_config(options)


@pytest.mark.parametrize(
    ("answer", "token"),
    [
        ({"access_token": "t", "expires_in": "3599"}, "t"),  # Entra ID v1 sends strings
        ({"access_token": "t", "expires_in": None}, None),
        ({"access_token": ""}, None),
        (["not", "an", "object"], None),
    ],
)
def test_an_answer_without_a_usable_token_is_one_line(answer, token):
    with token_endpoint(lambda form: (200, answer)) as url:
        provider = kafka_python_config(_entra_options(url))["sasl_oauth_token_provider"]
        if token is not None:
            assert provider.token() == token
            return
        with pytest.raises(ProducerError, match=r"answered without a usable access token$"):
            provider.token()
