"""The soak's memory rule: a worker that leaks fails it, a killed worker's replacement does not."""

from loadtest.soak import worker_rss_growth


def snapshots(series_by_pid: dict[str, list[float | None]]) -> list[dict]:
    points = max(len(series) for series in series_by_pid.values())
    return [{"requests": 100 * index,
             "worker_rss_mb_by_pid": {"mnist": {pid: series[index] for pid, series in series_by_pid.items()
                                                if index < len(series) and series[index] is not None}}}
            for index in range(points)]


def test_a_replacement_worker_refilling_to_its_working_size_is_not_growth():
    # pid 2 is killed after the fourth point; pid 3 starts small and warms up to the same size.
    history = snapshots({"1": [300] * 10, "2": [300] * 4, "3": [None] * 4 + [120, 260, 300, 301, 300, 300]})
    assert worker_rss_growth(history, "mnist", warmup_requests=100) < 0.01


def test_one_worker_growing_by_a_fifth_is_reported_as_such():
    history = snapshots({"1": [300] * 10, "2": [300, 300, 300, 300, 310, 320, 330, 340, 350, 360]})
    assert abs(worker_rss_growth(history, "mnist", warmup_requests=100) - 0.2) < 0.01
