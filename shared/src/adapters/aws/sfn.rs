//! The approval workflow on Step Functions: authorize starts one execution
//! of `statemachines/approval.asl.json` per pending call, named by the
//! approval id; the approval callback completes its waiting step.

use async_trait::async_trait;
use aws_sdk_sfn::Client;

use super::describe;
use crate::ports::{
    ApprovalRequest, ApprovalWorkflow, CallbackError, StoreError, TaskCallbacks, TaskToken,
};

/// Starts executions of the approval state machine.
#[derive(Debug, Clone)]
pub struct SfnApprovalWorkflow {
    client: Client,
    state_machine_arn: String,
}

impl SfnApprovalWorkflow {
    /// Starts executions of `state_machine_arn`.
    pub fn new(client: Client, state_machine_arn: impl Into<String>) -> Self {
        Self {
            client,
            state_machine_arn: state_machine_arn.into(),
        }
    }
}

#[async_trait]
impl ApprovalWorkflow for SfnApprovalWorkflow {
    async fn start(&self, request: &ApprovalRequest) -> Result<(), StoreError> {
        let input =
            serde_json::to_string(request).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let started = self
            .client
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            // The name makes a retried start of the same approval a no-op.
            .name(&request.approval_id)
            .input(input)
            .send()
            .await;
        match started {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_execution_already_exists()) =>
            {
                Ok(())
            }
            Err(e) => Err(StoreError::Unavailable(describe(&e))),
        }
    }
}

/// Completes waiting steps with `SendTaskSuccess` / `SendTaskFailure`.
#[derive(Debug, Clone)]
pub struct SfnTaskCallbacks {
    client: Client,
}

impl SfnTaskCallbacks {
    /// Callbacks through `client`.
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

/// `TaskTimedOut`, `TaskDoesNotExist` and `InvalidToken` all mean the step no longer waits.
fn not_waiting(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("TaskTimedOut" | "TaskDoesNotExist" | "InvalidToken")
    )
}

fn callback_error<E, R>(e: &aws_sdk_sfn::error::SdkError<E, R>) -> CallbackError
where
    E: aws_sdk_sfn::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = e
        .as_service_error()
        .and_then(aws_sdk_sfn::error::ProvideErrorMetadata::code);
    if not_waiting(code) {
        CallbackError::NotWaiting
    } else {
        CallbackError::Unavailable(describe(e))
    }
}

#[async_trait]
impl TaskCallbacks for SfnTaskCallbacks {
    async fn succeed(
        &self,
        token: &TaskToken,
        output: &serde_json::Value,
    ) -> Result<(), CallbackError> {
        self.client
            .send_task_success()
            .task_token(&token.0)
            .output(output.to_string())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| callback_error(&e))
    }

    async fn fail(&self, token: &TaskToken, error: &str, cause: &str) -> Result<(), CallbackError> {
        self.client
            .send_task_failure()
            .task_token(&token.0)
            .error(error)
            .cause(cause)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| callback_error(&e))
    }
}
