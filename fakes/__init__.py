"""In-process fakes of the Google Cloud services the catalog drives past the emulators, served on
loopback so that the real client libraries (and gcloud, Airflow's Google provider) talk to them
unchanged. Each fake enforces the rules Google documents for its service, each rule stated once
(``fakes.rules.Rule``) with where Google documents it, so that a fake can refuse what the code
believes but Google does not. They import nothing of the catalog: written from Google's
documentation, not from the code they check."""
