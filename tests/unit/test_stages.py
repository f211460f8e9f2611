"""loadtest/stages.py: the handler's request path timed stage by stage, for every model of the catalog."""

import numpy as np
import pytest

from loadtest.handler_driver import torchserve_row
from loadtest.verify import decode_images
from loadtest.stages import STAGES, run_stages, stage_microseconds
from tests.handler_context import initialized
from training.catalog import CATALOG

BATCH = 4


@pytest.mark.parametrize("name", CATALOG)
def test_every_stage_of_every_model_takes_time(name, artifacts):
    samples = CATALOG[name].heldout_requests(2 * BATCH)
    microseconds = stage_microseconds(name, artifacts / name, BATCH, samples, repeats=1)
    assert list(microseconds) == list(STAGES)
    assert all(value > 0 for value in microseconds.values())


@pytest.mark.parametrize("name", CATALOG)
def test_stages_give_the_answers_handle_gives_and_run_the_model_on_batches_of_the_batch_size(name, artifacts,
                                                                                           monkeypatch):
    handler, context = initialized(CATALOG[name].handler_class(), artifacts / name, name, batch=BATCH)
    samples = CATALOG[name].heldout_requests(2 * BATCH + 1)
    forward, batch_sizes = handler.forward, []

    def counting_forward(batch):
        outputs = forward(batch)
        batch_sizes.append(len(outputs))
        return outputs
    monkeypatch.setattr(handler, "forward", counting_forward)
    answers, seconds = run_stages(handler, samples, BATCH)
    assert batch_sizes == [BATCH, BATCH, 1] and list(seconds) == list(STAGES)
    rows = [torchserve_row(sample) for sample in samples]
    handled = [answer for start in range(0, len(rows), BATCH)
               for answer in handler.handle(rows[start:start + BATCH], context)]
    if CATALOG[name].is_generator:  # one image per request: the stages' answer is its pixels
        handled = [decode_images(answer)[0] for answer in handled]
        assert len(answers) == len(handled) and all(map(np.array_equal, answers, handled))
    else:
        assert answers == handled
