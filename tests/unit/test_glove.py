import numpy as np

from handlers.transforms.text import build_vocabulary, tokenize
from training.data.glove import embedding_matrix, load_glove, treebank_parts


def test_the_wheel_holds_400k_words_most_frequent_first():
    glove = load_glove()
    assert len(glove.words) == glove.vectors.shape[0] == 400_000 and glove.dim == 50
    assert glove.words[:4] == ["the", ",", ".", "of"]


def test_contractions_get_the_mean_of_their_treebank_parts():
    glove = load_glove()
    assert treebank_parts("don't") == ["do", "n't"] and treebank_parts("it's") == ["it", "'s"]
    assert treebank_parts("great") == ["great"]
    expected = (np.asarray(glove.vectors[glove.index["ca"]]) + glove.vectors[glove.index["n't"]]) / 2
    assert np.allclose(glove.vector_of("can't"), expected)
    assert glove.vector_of("zzzqqqxxy") is None


def test_frequent_tokens_are_single_tokens_of_our_tokenizer_in_glove_order():
    tokens = load_glove().frequent_tokens(20000)
    assert len(tokens) == len(set(tokens)) == 20000
    assert all(tokenize(token) == [token] for token in tokens)
    assert "," not in tokens and "1990" not in tokens  # punctuation and numbers are not words to us
    assert tokens.index("the") < tokens.index("good") < tokens.index("terrible")


def test_embedding_rows_are_glove_vectors_and_the_rest_are_drawn_at_its_scale():
    glove = load_glove()
    vocabulary = build_vocabulary(["I loved it :)", "don't go #frumplewix"], min_freq=1, max_size=100, max_tokens=20)
    matrix, pretrained = embedding_matrix(vocabulary, glove, seed=0)
    assert matrix.shape == (len(vocabulary), 50) and not matrix[vocabulary.pad_id].any()
    assert pretrained[vocabulary.index["loved"]] and pretrained[vocabulary.index["don't"]]
    assert np.array_equal(matrix[vocabulary.index["loved"]], glove.vectors[glove.index["loved"]])
    assert not pretrained[vocabulary.index["frumplewix"]] and not pretrained[vocabulary.pad_id]
    drawn = matrix[~pretrained][1:]
    assert 0.2 < drawn.std() / np.asarray(glove.vectors[:10000]).std() < 5
