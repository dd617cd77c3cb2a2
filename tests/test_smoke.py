from cluster import wait_until


def test_three_nodes_converge(make_node):
    nodes = [make_node(SHAZBOT_MONITOR=(i == 0)) for i in range(3)]
    urls = {n.base_url for n in nodes}
    wait_until(lambda: all(set(n.view(False)) == urls for n in nodes), what="convergence")
