"""FaaSTrainGym's four OpenFaaS functions, one handler package each."""
