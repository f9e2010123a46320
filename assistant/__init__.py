"""Questions become cited answers: the portal, the REST API and the question flow.

Owns questions, answers, citations, feedback and API tokens; the question flow (`services`:
scope, retrieve, answer, check, store), retrieval (`retrieval`), the model clients (`llm`),
the prompt (`prompt`), grounding checks (`grounding`: attribution, support, extractive
answers), patient scoping (`patients`), audited user-facing actions (`actions`), answer HTML
(`presenters`), the portal (`views`) and the API (`api`), roles and sign-in throttling.

May import `ingest` (to read passages, through its selectors and search) and `audit` (to
record what users did and saw); neither imports it.
"""
