"""The shared, transport-free core that the server, training and the CLI all import.

errors (code names, no grpc), deals (the deal record), deal_text (the embedding
template), features (the scorer's feature spec and featurizer), similar_features
(the similarity features' rules and arithmetic), manifest (the artifact format).
"""
