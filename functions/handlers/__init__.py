"""One module per Lambda function: template.yaml names each `handlers.<module>.lambda_handler`."""
