"""The CTC head's BiLSTM over padded batches is the packed-sequence BiLSTM (values and
gradients), without the packed path's slow CPU backward."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from w2v.plugins.ctc.head import CTCHead


def packed_reference(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    return nn.utils.rnn.pad_packed_sequence(lstm(packed)[0], batch_first=True,
                                            total_length=x.shape[1])[0]


@pytest.mark.parametrize("layers", [1, 2])
def test_bilstm_equals_the_packed_definition_in_values_and_gradients(layers):
    torch.manual_seed(0)
    head = CTCHead(CTCHead.Config(lstm_layers=layers, lstm_dim=4), 6, 5)
    x = torch.randn(3, 9, 6, requires_grad=True)
    lengths = torch.tensor([9, 4, 1])
    ours, ref = head._run_lstm(x, lengths), packed_reference(head.lstm, x, lengths)
    assert torch.allclose(ours, ref, atol=1e-6)
    assert (ours[1, 4:] == 0).all() and (ours[2, 1:] == 0).all()
    weights = torch.randn_like(ref)        # a loss that reads every output
    params = [x, *head.lstm.parameters()]
    for a, b in zip(torch.autograd.grad((ours * weights).sum(), params),
                    torch.autograd.grad((ref * weights).sum(), params)):
        assert torch.allclose(a, b, atol=1e-5)


