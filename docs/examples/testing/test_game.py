import game
import pytest


def test_the_conversation_works_on_4g(sockscope_proxy, game_server):
    proxy = sockscope_proxy(target=game_server.address, preset="Mobile 4G", seed=1)
    assert game.client(*proxy.listen) == game.WELCOME
    answer = proxy.expect(f'c2s and text == "{game.REPLY}"', within=2)
    assert answer.delay_ms >= 80  # the preset's latency was on the way
    game_server.thread.join(10)
    assert game_server.heard == game.REPLY


def test_the_answer_comes_within_300_ms_at_100_ms_of_lag(sockscope_proxy, game_server):
    proxy = sockscope_proxy(target=game_server.address)
    with proxy.conditions(latency=100):  # each way: 200 ms round trip
        game.client(*proxy.listen)
        welcome = proxy.expect("s2c and text contains 'Hello'")
        answer = proxy.expect("c2s and text contains 'Ping received'", within=0.3)
    # from the server sending its welcome to the server receiving the answer
    assert answer.delivered - welcome.arrived < 0.300


def test_the_client_sees_a_refused_connection_when_the_server_is_down(sockscope_proxy, game_server):
    proxy = sockscope_proxy(target=game_server.address)
    with proxy.down(), pytest.raises(ConnectionRefusedError):
        game.client(*proxy.listen)
    assert game.client(*proxy.listen) == game.WELCOME  # back up, on the same port
